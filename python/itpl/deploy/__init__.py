"""Running models on devices, standing alone: PyTorch -> .tflite conversion
(``export``), int8 quantization (``quantize``), flatbuffer editing for
micro-models (``flatbuffer``), devices (``devices``: the local CPU and phones
over ADB), drift-proof timing beside a reference model (``timing``) and batch
benchmarks (``bench``). Imports only :mod:`itpl.util`."""
