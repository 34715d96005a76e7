"""Several latency budgets at once (a decoder's TTFT and TPOT, and a request profile): config, pricing, the
architecture step on paper, the feasibility rule, checkpoints and typed errors before compute."""

import json
import pickle

import pytest
import torch

from nas.errors import ConfigError, LatencyTableError, LatencyTableMismatchError
from nas.latency import Predictor, load_table
from nas.latency.table import LatencyTable
from nas.models.transformer import TransformerModel
from nas.spaces import load_space
from nas.spaces.choice import Choice
from nas.spaces.space import SearchSpace
from nas.supernet import Supernet
from nas.tasks.batches import Encoded
from trainers import SearchConfig, dnas
from trainers.feasible import budget_ratio, most_probable_feasible
from trainers.pipeline import load_predictors, resolve_targets
from trainers.budgets import BudgetPricing
from trainers.search import DNASSearch

PREFILL = "tiny-llama.onnxruntime-cpu.t1.b1.s32"
DECODE = "tiny-llama.onnxruntime-cpu.t1.b1.c32.decode"
TABLES = {"ttft_ms": PREFILL, "tpot_ms": DECODE}
DECODER = dict(space="tiny-llama", task="wordnet-definitions")

# --- a two-label space on tiny-llama's dimensions, priced by two hand-made tables --------------------------------
# Searched: layer0.attn.bits ∈ (32, 8) and layer1.keep ∈ (1, 0); everything else fixed (4 heads, FFN 64, fp32).
# prefill (TTFT): overhead .5 + rest .5 + embed 1 = 2;   attn32 4, attn8 2;   ffn 2
#    TTFT(arch) = 2 + (attn0 + 2) + keep1·(4 + 2)      -> full 14, (8, keep) 12, (32, skip) 8, (8, skip) 6
# decode (TPOT): overhead .25 + rest .25 + embed .5 = 1;  attn32 1, attn8 .5;  ffn .5
#    TPOT(arch) = 1 + (attn0 + .5) + keep1·(1 + .5)    -> full 4, (8, keep) 3.5, (32, skip) 2.5, (8, skip) 2
PREFILL_MS = {"overhead": 0.5, "rest": 0.5, "embed:bits=32": 1.0, "attn:heads=4:bits=32": 4.0,
              "attn:heads=4:bits=8": 2.0, "ffn:width=64:bits=32": 2.0}
DECODE_MS = {"overhead": 0.25, "rest": 0.25, "embed:bits=32": 0.5, "attn:heads=4:bits=32": 1.0,
             "attn:heads=4:bits=8": 0.5, "ffn:width=64:bits=32": 0.5}


def two_phase_space():
    return SearchSpace(name="two-phase", model="tiny-llama", dims=load_space("tiny-llama").dims,
                       choices=(Choice("layer0.attn.bits", (32, 8)), Choice("layer1.keep", (1, 0))))


def hand_table(space, entries, phase):
    return LatencyTable(space_name=space.name, space_hash=space.hash, device={"cpu": "hand", "fingerprint": "hand"},
                        runtime={"name": "hand"}, threads=1, batch=1, seq=1 if phase == "decode" else 8,
                        context=8 if phase == "decode" else 0, phase=phase,
                        entries={k: {"median_ms": v, "iqr_ms": 0.0, "n": 1} for k, v in entries.items()})


def hand_predictors(space):
    return {"ttft_ms": Predictor(hand_table(space, PREFILL_MS, "prefill"), space),
            "tpot_ms": Predictor(hand_table(space, DECODE_MS, "decode"), space)}


def hand_search(targets, *, output_tokens=0, lambda0=1.5, dual_lr=0.6, loss="hinge", **config):
    """A DNASSearch on the two-label space whose task loss is a constant 0.5 (so only the penalty has a gradient),
    its logits at z = (0, ln 3) for both labels: p(32 bits) = p(keep) = 1/4, the argmax (8 bits, skip)."""
    space = two_phase_space()
    torch.manual_seed(0)
    net = Supernet(space, TransformerModel(space.dims))
    with torch.no_grad():
        for c in space:
            net.logits(c.label).copy_(torch.tensor([0.0, float(torch.log(torch.tensor(3.0)))]))
    cfg = SearchConfig(**DECODER, latency_tables=TABLES, latency_table=PREFILL, output_tokens=output_tokens,
                       lambda0=lambda0, dual_lr=dual_lr, loss=loss, steps=2, warmup_steps=0, batch_size=2, **config)
    ids = torch.randint(1, 100, (4, 6), generator=torch.Generator().manual_seed(0))
    data = Encoded(ids, torch.ones_like(ids), torch.zeros(4, dtype=torch.long))
    search = DNASSearch(net, torch.nn.Linear(1, 1), hand_predictors(space), targets, data, data, cfg)
    search._task_loss = lambda batch, weights, mode: torch.tensor(0.5)
    return search


def grads(search):
    return {c.label: search.net.logits(c.label).grad.tolist() for c in search.net.space}


def test_two_budgets_on_paper():
    # p32 = p_keep = 1/4:  E[TTFT] = 2 + (¼·4 + ¾·2) + 2 + ¼·6 = 8;   E[TPOT] = 1 + (¼·1 + ¾·.5) + .5 + ¼·1.5 = 2.5
    # argmax (8 bits, skip): TTFT 6, TPOT 2 (below E: the straight-through value is E itself)
    # T_ttft = 6 (the smallest architecture), T_tpot = 2; λ = 1.5 each:
    #   penalty_ttft = 1.5·(8 − 6)/6 = 0.5;  penalty_tpot = 1.5·(2.5 − 2)/2 = 0.375;  loss = 0.5 + 0.875 = 1.375
    # gradient (p ⊙ (g − p·g) per label, g the per-option latency, times λ_b/T_b = 1/4 and 3/4):
    #   attn.bits: TTFT g = (4, 2), p·g = 2.5 -> (.375, −.375);  TPOT g = (1, .5), p·g = .625 -> (.09375, −.09375)
    #              1/4·.375 + 3/4·.09375 = .1640625
    #   keep:      TTFT g = (6, 0), p·g = 1.5 -> (1.125, −1.125); TPOT g = (1.5, 0), p·g = .375 -> (.28125, −.28125)
    #              1/4·1.125 + 3/4·.28125 = .4921875
    # dual ascent at lr .6 on the relative violations 1/3 and 1/4: λ_ttft = 1.5 + .2 = 1.7, λ_tpot = 1.5 + .15 = 1.65
    search = hand_search({"ttft_ms": 6.0, "tpot_ms": 2.0})
    d = search.arch_step(0, 1.0)
    assert d["ttft_ms.expected_ms"] == pytest.approx(8.0) and d["tpot_ms.expected_ms"] == pytest.approx(2.5)
    assert d["ttft_ms.argmax_ms"] == pytest.approx(6.0) and d["tpot_ms.argmax_ms"] == pytest.approx(2.0)
    assert d["ttft_ms.ratio"] == pytest.approx(8 / 6) and d["tpot_ms.argmax_ratio"] == pytest.approx(1.0)
    assert d["ttft_ms.penalty"] == pytest.approx(0.5) and d["tpot_ms.penalty"] == pytest.approx(0.375)
    assert d["penalty"] == pytest.approx(0.875) and d["task"] == pytest.approx(0.5)
    assert d["loss"] == pytest.approx(1.375)
    assert d["ttft_ms.violation"] == pytest.approx(1 / 3) and d["tpot_ms.violation"] == pytest.approx(0.25)
    assert d["ttft_ms.lambda"] == 1.5 and d["tpot_ms.lambda"] == 1.5  # the λ the step used
    g = grads(search)
    assert g["layer0.attn.bits"] == pytest.approx([0.1640625, -0.1640625])
    assert g["layer1.keep"] == pytest.approx([0.4921875, -0.4921875])
    assert search.state.lambdas == pytest.approx({"ttft_ms": 1.7, "tpot_ms": 1.65})
    assert not any(k in d for k in ("expected_ms", "ratio", "lambda"))  # no flat keys with several budgets


def test_a_met_budget_adds_nothing_and_its_lambda_decays():
    # T_tpot = 3: E[TPOT] = 2.5 meets it: no penalty, no gradient from TPOT, λ_tpot = 1.5 + .6·(−1/6) = 1.4
    search = hand_search({"ttft_ms": 6.0, "tpot_ms": 3.0})
    d = search.arch_step(0, 1.0)
    assert d["tpot_ms.penalty"] == 0.0 and d["loss"] == pytest.approx(1.0)
    assert grads(search)["layer0.attn.bits"] == pytest.approx([0.25 * 0.375, -0.25 * 0.375])
    assert search.state.lambdas == pytest.approx({"ttft_ms": 1.7, "tpot_ms": 1.4})


def test_request_budget_on_paper():
    # 4 output tokens: request = TTFT + 4·TPOT; E = 8 + 4·2.5 = 18 (linear, so exact); argmax 6 + 4·2 = 14
    # T_request = 16, λ 1.5: penalty 1.5·2/16 = .1875; gradient λ/T·(dE_ttft + 4·dE_tpot):
    #   attn.bits (1.5/16)·(.375 + 4·.09375) = .0703125;   keep (1.5/16)·(1.125 + 4·.28125) = .2109375
    # λ_request = 1.5 + .6·(2/16) = 1.575; TTFT and TPOT are logged, not constrained
    search = hand_search({"request_ms": 16.0}, output_tokens=4)
    assert search.pricing.names == ("ttft_ms", "tpot_ms", "request_ms")
    d = search.arch_step(0, 1.0)
    assert d["request_ms.expected_ms"] == pytest.approx(18.0) and d["request_ms.argmax_ms"] == pytest.approx(14.0)
    assert d["request_ms.penalty"] == pytest.approx(0.1875) and d["loss"] == pytest.approx(0.6875)
    assert d["ttft_ms.expected_ms"] == pytest.approx(8.0) and "ttft_ms.penalty" not in d
    g = grads(search)
    assert g["layer0.attn.bits"] == pytest.approx([0.0703125, -0.0703125])
    assert g["layer1.keep"] == pytest.approx([0.2109375, -0.2109375])
    assert search.state.lambdas == pytest.approx({"request_ms": 1.575})


def test_fbnet_prices_its_one_budget_and_keeps_lambda():
    # fbnet on TPOT alone: task·α·(log E)^β = 0.5·0.2·(ln 2.5)^0.6; λ is not used and not updated
    import math

    one = {"loss": "fbnet", "target_fractions": {"tpot_ms": 0.5}}
    search = hand_search({"tpot_ms": 2.0}, **one)
    d = search.arch_step(0, 1.0)
    assert d["loss"] == pytest.approx(0.5 * 0.2 * math.log(2.5) ** 0.6)
    assert d["tpot_ms.expected_ms"] == pytest.approx(2.5) and d["tpot_ms.lambda"] == 1.5
    assert search.state.lambdas == {"tpot_ms": 1.5}
    with pytest.raises(ConfigError, match="'fbnet' prices one budget"):
        hand_search({"ttft_ms": 6.0, "tpot_ms": 2.0}, **one)


def test_pricing_by_hand_and_the_smallest_request():
    space = two_phase_space()
    pricing = BudgetPricing(hand_predictors(space), output_tokens=4)
    small = {"layer0.attn.bits": 8, "layer1.keep": 0}
    assert pricing.latencies(space.full()) == pytest.approx({"ttft_ms": 14.0, "tpot_ms": 4.0, "request_ms": 30.0})
    assert pricing.latencies(small) == pytest.approx({"ttft_ms": 6.0, "tpot_ms": 2.0, "request_ms": 14.0})
    assert [pricing.min_ms(b) for b in pricing.names] == pytest.approx([6.0, 2.0, 14.0])
    assert BudgetPricing(hand_predictors(space)).names == ("ttft_ms", "tpot_ms")  # no request without tokens
    with pytest.raises(ConfigError, match="request_ms: not a latency"):
        BudgetPricing(hand_predictors(space)).latency_ms("request_ms", small)
    # on the shipped tiny-llama tables the smallest request is no less than the sum of the phases' minima
    tiny = load_space("tiny-llama")
    real = BudgetPricing(load_predictors(SearchConfig(**DECODER, latency_tables=TABLES, latency_table=PREFILL), tiny),
                         output_tokens=16)
    assert real.min_ms("request_ms") >= real.min_ms("ttft_ms") + 16 * real.min_ms("tpot_ms") - 1e-9
    assert real.min_ms("request_ms") < real.full_ms("request_ms")


def test_feasible_means_every_budget_holds():
    space = two_phase_space()
    pricing = BudgetPricing(hand_predictors(space))
    fns = {b: (lambda a, b=b: pricing.latency_ms(b, a)) for b in pricing.names}
    # T_ttft = 13 lets (8, keep) = 12 through, T_tpot = 3 does not (3.5): max(12/13, 3.5/3) > 1;
    # (32, skip): 8/13 and 2.5/3, both hold
    ratio = budget_ratio(fns, {"ttft_ms": 13.0, "tpot_ms": 3.0})
    assert ratio({"layer0.attn.bits": 8, "layer1.keep": 1}) == pytest.approx(3.5 / 3)
    lp = {"layer0.attn.bits": {32: -0.1, 8: -2.3}, "layer1.keep": {1: -0.1, 0: -2.3}}
    arch, moves = most_probable_feasible(space, ratio, lp, space.full(), 1.0, unit="max L/T")
    assert arch == {"layer0.attn.bits": 32, "layer1.keep": 0} and len(moves) == 1 and "max L/T" in moves[0]
    with pytest.raises(ConfigError, match="targets: 1 max L/T is below every reachable"):
        most_probable_feasible(space, budget_ratio(fns, {"ttft_ms": 5.0, "tpot_ms": 3.0}), lp, space.full(), 1.0,
                               unit="max L/T", field="targets")


def test_band_fill_grows_the_binding_budget_into_its_band_and_none_past_its_target():
    from trainers.feasible import most_probable_in_band

    space = two_phase_space()
    pricing = BudgetPricing(hand_predictors(space))
    fns = {b: (lambda a, b=b: pricing.latency_ms(b, a)) for b in pricing.names}
    ratio = budget_ratio(fns, {"ttft_ms": 13.0, "tpot_ms": 2.7})
    lp = {"layer0.attn.bits": {32: -0.7, 8: -0.7}, "layer1.keep": {1: -0.7, 0: -0.7}}
    # (8, skip): max(6/13, 2/2.7) = .741 < .9; 32 bits: max(8/13, 2.5/2.7) = .926 lands in the band;
    # keeping layer 1 would pass T_tpot (3.5/2.7 > 1) and is never taken
    start = {"layer0.attn.bits": 8, "layer1.keep": 0}
    arch, moves = most_probable_in_band(space, ratio, lp, start, 1.0, 0.9, unit="max L/T")
    assert arch == {"layer0.attn.bits": 32, "layer1.keep": 0} and len(moves) == 1
    assert moves[0].endswith("0.7407 → 0.9259 max L/T")


# --- config ---------------------------------------------------------------------------------------------------

def test_config_round_trips_hashes_and_fills_the_latency_table():
    c = SearchConfig.from_dict({**DECODER, "latency_tables": {"tpot_ms": DECODE, "ttft_ms": PREFILL},
                                "output_tokens": 32, "target_fractions": {"ttft_ms": 0.7},
                                "targets_ms": {"request_ms": 2.0}})
    assert c.latency_table == PREFILL  # the ttft_ms table, whatever the order
    assert SearchConfig.from_dict({**DECODER, "latency_tables": {"tpot_ms": DECODE}}).latency_table == DECODE
    assert c.priced_budgets() == ("ttft_ms", "tpot_ms", "request_ms")
    assert c.constrained_budgets() == ("ttft_ms", "request_ms")
    d = c.to_dict()
    assert type(d["latency_tables"]) is dict and d["targets_ms"] == {"request_ms": 2.0}
    again = SearchConfig.from_dict(json.loads(json.dumps(d)))
    assert again == c and hash(again) == hash(c) and pickle.loads(pickle.dumps(c)) == c
    assert c.replace(seed=1).latency_tables == TABLES
    with pytest.raises(TypeError, match="read-only"):
        c.latency_tables["ttft_ms"] = DECODE
    old = {k: v for k, v in SearchConfig().to_dict().items()
           if k not in ("latency_tables", "target_fractions", "targets_ms", "output_tokens")}
    assert SearchConfig.from_dict(old) == SearchConfig()  # a dict from before the budgets still loads
    assert SearchConfig().constrained_budgets() == ("latency_ms",) and SearchConfig().priced_budgets() == ()
    both = SearchConfig(**DECODER, latency_tables=TABLES, latency_table=PREFILL, target_fraction=0.6)
    assert both.constrained_budgets() == ("ttft_ms", "tpot_ms")


@pytest.mark.parametrize("change, match", [
    ({"latency_tables": {}, "target_fractions": {"ttft_ms": 0.5}}, "target_fractions: per-budget targets need "
                                                                   "latency_tables"),
    ({"latency_tables": {}, "targets_ms": {"ttft_ms": 1.0}}, "targets_ms: per-budget targets need latency_tables"),
    ({"latency_tables": {"e2e_ms": PREFILL}}, "latency_tables: 'e2e_ms' is not a latency"),
    ({"target_fractions": {"e2e_ms": 0.5}}, "target_fractions: 'e2e_ms' is not a budget this trial prices"),
    ({"target_fractions": {"request_ms": 0.5}}, "target_fractions: 'request_ms' needs output_tokens > 0"),
    ({"latency_tables": {"ttft_ms": PREFILL}, "output_tokens": 8, "targets_ms": {"request_ms": 1.0}},
     "targets_ms: 'request_ms' needs output_tokens > 0 and both"),
    ({"target_fractions": {"ttft_ms": 1.5}}, r"target_fractions: ttft_ms: must be in \(0, 1\]"),
    ({"target_fractions": {"ttft_ms": 0.0}}, r"target_fractions: ttft_ms: must be in \(0, 1\]"),
    ({"targets_ms": {"tpot_ms": -1.0}}, "targets_ms: tpot_ms: must be > 0"),
    ({"targets_ms": {"tpot_ms": "fast"}}, "targets_ms: tpot_ms: expected a number"),
    ({"targets_ms": {"tpot_ms": 1.0}, "target_fractions": {"tpot_ms": 0.5}}, "target_fractions: 'tpot_ms' is also in "
                                                                             "targets_ms"),
    ({"target_ms": 1.0, "target_fraction": None}, "target_ms: with latency_tables"),
    ({"latency_table": "other"}, "latency_table: 'other' is none of latency_tables"),
    ({"output_tokens": -1}, "output_tokens"),
    ({"loss": "fbnet"}, "loss: 'fbnet' prices one budget"),
    ({"latency_tables": [PREFILL]}, "latency_tables: expected a mapping"),
])
def test_bad_budgets_are_config_errors_naming_field_and_key(change, match):
    with pytest.raises(ConfigError, match=match):
        SearchConfig(**{**DECODER, "latency_tables": TABLES, "latency_table": PREFILL, **change})


def test_fbnet_takes_one_budget_of_several_tables():
    c = SearchConfig(**DECODER, latency_tables=TABLES, latency_table=PREFILL, loss="fbnet",
                     target_fractions={"tpot_ms": 0.7})
    assert c.constrained_budgets() == ("tpot_ms",)


# --- targets and tables, checked before compute -------------------------------------------------------------------

def test_targets_per_budget_from_fractions_and_ms():
    space = load_space("tiny-llama")
    cfg = SearchConfig(**DECODER, latency_tables=TABLES, latency_table=PREFILL, target_fraction=0.8)
    preds = load_predictors(cfg, space)
    assert list(preds) == ["ttft_ms", "tpot_ms"] and preds["tpot_ms"].table.phase == "decode"
    full = {b: p.latency_ms(space.full()) for b, p in preds.items()}
    assert resolve_targets(cfg, preds) == pytest.approx({b: 0.8 * full[b] for b in full})
    cfg = cfg.replace(output_tokens=10, target_fractions={"ttft_ms": 0.9}, targets_ms={"request_ms": 1.3})
    assert resolve_targets(cfg, preds) == pytest.approx({"ttft_ms": 0.9 * full["ttft_ms"], "request_ms": 1.3})
    one = SearchConfig(**DECODER, latency_table=PREFILL, target_fraction=0.8)
    assert resolve_targets(one, load_predictors(one, space)) == pytest.approx({"latency_ms": 0.8 * full["ttft_ms"]})


def refused_before_compute(cfg, error, match):
    from trainers import search_once

    with pytest.raises(error, match=match):
        dnas.check(cfg)
    lines = []
    with pytest.raises(error, match=match):
        search_once(cfg, progress=lines.append)
    assert lines == []  # not even the setup line


def test_decode_table_as_ttft_is_refused_before_compute(definitions):
    cfg = SearchConfig(**DECODER, latency_tables={"ttft_ms": DECODE, "tpot_ms": DECODE}, latency_table=DECODE)
    refused_before_compute(cfg, LatencyTableMismatchError,
                           f"latency_tables: ttft_ms: table {DECODE}: phase: expected a prefill table")
    cfg = SearchConfig(**DECODER, latency_tables={"ttft_ms": PREFILL, "tpot_ms": PREFILL}, latency_table=PREFILL)
    refused_before_compute(cfg, LatencyTableMismatchError, "latency_tables: tpot_ms: .*expected a decode table")


def test_table_of_another_space_under_a_budget_is_refused(tiny_table, definitions):
    other = tiny_table("tiny-bert")
    cfg = SearchConfig(**DECODER, latency_tables={"ttft_ms": other, "tpot_ms": DECODE}, latency_table=other)
    refused_before_compute(cfg, LatencyTableError, "latency_tables: ttft_ms: space hash")


def test_a_target_below_one_budgets_smallest_architecture_is_refused_before_compute(definitions):
    space = load_space("tiny-llama")
    low = Predictor(load_table(DECODE), space).min_latency_ms()
    cfg = SearchConfig(**DECODER, latency_tables=TABLES, latency_table=PREFILL, targets_ms={"tpot_ms": 0.9 * low})
    refused_before_compute(cfg, ConfigError, rf"targets_ms: tpot_ms: target {0.9 * low:.4g} ms is below the smallest "
                                             rf"architecture .*\({low:.4g} ms, table tiny-llama/")
    cfg = SearchConfig(**DECODER, latency_tables=TABLES, latency_table=PREFILL, target_fraction=0.3)
    refused_before_compute(cfg, ConfigError, "target_fraction: ttft_ms: target .* below the smallest")
    cfg = SearchConfig(**DECODER, latency_tables=TABLES, latency_table=PREFILL, output_tokens=16,
                       target_fractions={"request_ms": 0.5})
    refused_before_compute(cfg, ConfigError, r"target_fractions: request_ms: .* below .*ttft_ms \+ 16·tpot_ms")


# --- the search loop with two tables: progress, checkpoints -------------------------------------------------------

def tiny_search(**kw):
    from tests.trainers.test_search import loaded, synthetic
    from trainers.search import make_task

    space = load_space("tiny-llama")
    torch.manual_seed(0)
    net = Supernet.build(space, loaded=loaded("tiny-llama"))
    cfg = SearchConfig(space="tiny-llama", latency_tables=TABLES, latency_table=PREFILL,
                       **{"steps": 4, "warmup_steps": 1, "batch_size": 8, "weight_lr": 1e-3, "arch_lr": 0.05,
                          "log_every": 1, "target_fraction": 0.6, "dual_lr": 1.0, **kw})
    preds = load_predictors(cfg, space)
    targets = resolve_targets(cfg, preds)
    task = make_task(cfg, space.dims.hidden, 3)
    return DNASSearch(net, task, preds, targets, synthetic(space.dims.vocab_size),
                      synthetic(space.dims.vocab_size, seed=1), cfg)


def test_two_lambdas_checkpoint_and_resume_like_an_uninterrupted_run(tmp_path):
    full = tiny_search(checkpoint_every=3)
    lines = []
    full.run(progress=lines.append)
    assert set(full.state.lambdas) == {"ttft_ms", "tpot_ms"}
    assert full.state.lambdas["ttft_ms"] != full.state.lambdas["tpot_ms"]  # each follows its own violation
    rows = [h for h in full.state.history if "ttft_ms.ratio" in h]
    assert rows and {"ttft_ms.lambda_next", "tpot_ms.lambda_next", "tpot_ms.argmax_ratio"} <= set(rows[-1])
    assert rows[-1]["tpot_ms.lambda_next"] == pytest.approx(full.state.lambdas["tpot_ms"])
    assert any("ttft_ms E/T" in line and "tpot_ms E/T" in line and "lambda" in line for line in lines)

    class Stop(Exception):
        pass

    def stop_after_3(line):
        if line.startswith("search step 4/"):
            raise Stop

    first = tiny_search(checkpoint_every=3)
    with pytest.raises(Stop):
        first.run(progress=stop_after_3, checkpoint_dir=tmp_path / "ck")
    meta = json.loads((tmp_path / "ck" / "search.json").read_text())
    assert meta["schema"] == 2 and set(meta["lambdas"]) == {"ttft_ms", "tpot_ms"}
    resumed = tiny_search(checkpoint_every=3)
    again = []
    resumed.run(progress=again.append, checkpoint_dir=tmp_path / "ck")
    assert again[0].startswith("search: resumed") and "step 3" in again[0]
    assert resumed.state.lambdas == pytest.approx(full.state.lambdas)
    for a, b in zip(full.net.arch_parameters(), resumed.net.arch_parameters()):
        assert torch.allclose(a, b, atol=1e-5)
    with pytest.raises(ConfigError, match="differs in target_fractions"):
        tiny_search(checkpoint_every=3, target_fractions={"ttft_ms": 0.7}).run(checkpoint_dir=tmp_path / "ck")


def test_a_schema_1_checkpoint_still_resumes(tiny_table, tmp_path):
    """A checkpoint written before the budgets (one "lambda", a config without the new fields) resumes its run."""
    from tests.trainers.test_search import make_search

    table = tiny_table()
    first, _ = make_search("tiny-bert", table, checkpoint_every=3, steps=2, lambda0=0.4)
    first.run(checkpoint_dir=tmp_path / "ck")
    meta_p = tmp_path / "ck" / "search.json"
    meta = json.loads(meta_p.read_text())
    lam = meta.pop("lambdas")["latency_ms"]
    new = ("latency_tables", "target_fractions", "targets_ms", "output_tokens")
    meta.update(schema=1, **{"lambda": lam}, config={k: v for k, v in meta["config"].items() if k not in new})
    meta_p.write_text(json.dumps(meta))
    resumed, _ = make_search("tiny-bert", table, checkpoint_every=3, steps=2, lambda0=0.4)
    lines = []
    resumed.run(progress=lines.append, checkpoint_dir=tmp_path / "ck")
    assert lines[0].startswith("search: resumed") and resumed.state.lambdas == {"latency_ms": pytest.approx(lam)}
    meta_p.write_text(json.dumps({**meta, "schema": 7}))
    with pytest.raises(ConfigError, match="unknown schema 7"):
        make_search("tiny-bert", table, checkpoint_every=3, steps=2, lambda0=0.4)[0].run(checkpoint_dir=tmp_path / "ck")


# --- one trial end to end: the tiny decoder under TTFT, TPOT and a request budget ---------------------------------

FAST = dict(steps=6, warmup_steps=2, batch_size=8, max_length=16, weight_lr=3e-3, arch_lr=0.1, finetune_steps=2,
            finetune_lr=3e-3, max_train=80, max_eval=8, log_every=1)


def test_decoder_trial_meets_every_budget(definitions):
    from trainers import search_once

    lines = []
    cfg = SearchConfig(**DECODER, latency_tables=TABLES, latency_table=PREFILL, output_tokens=16,
                       target_fractions={"ttft_ms": 0.7, "tpot_ms": 0.7}, targets_ms={"request_ms": 1.3}, **FAST)
    r = search_once(cfg, progress=lines.append)
    assert set(r.targets) == {"ttft_ms", "tpot_ms", "request_ms"} and r.targets["request_ms"] == 1.3
    assert set(r.latencies) == {"latency_ms", "ttft_ms", "tpot_ms", "request_ms"}
    assert r.latencies["latency_ms"] == r.latency_ms == r.latencies["ttft_ms"]  # latency_table is the prefill one
    assert r.target_ms == r.targets["ttft_ms"]
    assert r.latencies["request_ms"] == pytest.approx(r.latencies["ttft_ms"] + 16 * r.latencies["tpot_ms"])
    assert r.feasible and all(r.latencies[b] <= t for b, t in r.targets.items())
    d = r.to_dict()
    json.dumps(d)
    assert {k: d[k] for k in ("ttft_ms", "tpot_ms", "request_ms")} == {b: r.latencies[b] for b in d["targets"]}
    assert d["targets"] == r.targets and "latencies" not in d
    arch_rows = [h for h in r.history if "ttft_ms.ratio" in h]
    assert arch_rows and {f"{b}.lambda" for b in r.targets} <= set(arch_rows[0])
    assert {f"{b}.lambda_next" for b in r.targets} <= set(arch_rows[-1])
    assert lines[0].startswith("setup: space tiny-llama, tables ttft_ms tiny-llama/")
    assert "request_ms T = 1.300" in lines[0]
    result = next(line for line in lines if line.startswith("result: "))
    assert all(f"{b} " in result for b in ("ttft_ms", "tpot_ms", "request_ms")) and "(T 1.300)" in result


def test_derive_walks_the_full_model_down_until_every_budget_holds(definitions):
    from trainers import search_once

    # arch_prior 3 and a tiny arch_lr: after 2 steps the argmax is still the full model, over both budgets
    cfg = SearchConfig(**DECODER, latency_tables=TABLES, latency_table=DECODE, target_fraction=0.7,
                       **{**FAST, "arch_prior": 3.0, "arch_lr": 1e-3, "steps": 2, "warmup_steps": 0,
                          "finetune_steps": 0})
    lines = []
    r = search_once(cfg, progress=lines.append)
    space = load_space("tiny-llama")
    full = {b: p.latency_ms(space.full()) for b, p in load_predictors(cfg, space).items()}
    assert r.argmax_latency_ms == pytest.approx(full["tpot_ms"]) and r.latency_ms == r.latencies["tpot_ms"]
    assert r.feasible and r.latencies["ttft_ms"] <= r.targets["ttft_ms"] and r.latency_ms <= r.target_ms
    assert r.target_ms == r.targets["tpot_ms"] and "request_ms" not in r.latencies  # no output_tokens
    assert len(r.notes) == 1 and "ttft_ms" in r.notes[0] and "tpot_ms" in r.notes[0] and "max L/T" in r.notes[0]


def test_a_prompt_length_the_prefill_table_was_not_measured_at_is_refused_before_compute():
    from nas.errors import LatencyTableMismatchError
    from nas.spaces import load_space
    from trainers.pipeline import load_predictors

    space = load_space("tiny-llama")
    cfg = SearchConfig.from_dict({"space": "tiny-llama", "task": "wordnet-definitions",
                                  "latency_tables": {"ttft_ms": "tiny-llama.onnxruntime-cpu.t1.b1.s32",
                                                     "tpot_ms": "tiny-llama.onnxruntime-cpu.t1.b1.c32.decode"}})
    assert set(load_predictors(cfg.replace(prompt_tokens=32), space)) == {"ttft_ms", "tpot_ms"}
    with pytest.raises(LatencyTableMismatchError, match="latency_tables: ttft_ms: table .*s32: prompt: 64 tokens "
                                                        "requested, but .* was measured at 32 .*--seq 64"):
        load_predictors(cfg.replace(prompt_tokens=64), space)
    one = SearchConfig(space="tiny-llama", task="wordnet-definitions",
                       latency_table="tiny-llama.onnxruntime-cpu.t1.b1.s32", prompt_tokens=16)
    with pytest.raises(LatencyTableMismatchError, match="prompt: 16 tokens requested"):
        load_predictors(one, space)
    with pytest.raises(ConfigError, match="prompt_tokens: must be a positive integer"):
        SearchConfig(prompt_tokens=0)


def test_latency_tables_without_latency_table_take_the_ttft_table():
    tables = {"tpot_ms": "tiny-llama.onnxruntime-cpu.t1.b1.c32.decode", "ttft_ms": "tiny-llama.onnxruntime-cpu.t1.b1.s32"}
    cfg = SearchConfig(space="tiny-llama", task="wordnet-definitions", latency_tables=tables)
    assert cfg.latency_table == tables["ttft_ms"] and SearchConfig.from_dict(cfg.to_dict()) == cfg
    only_decode = SearchConfig(space="tiny-llama", latency_tables={"tpot_ms": tables["tpot_ms"]})
    assert only_decode.latency_table == tables["tpot_ms"]
