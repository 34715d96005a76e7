import subprocess
import sys


def test_import_nas_is_light():
    code = (
        "import sys, nas, nas.cli, nas.spaces, nas.supernet\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'onnx', 'onnxruntime', 'optuna', 'transformers'})\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
