"""The GPU self-check: the plugin's numbers against independent measurements taken in the same process.

``verdicts`` holds the table (torch-free), ``loops`` the hand-written reference loops, ``probes`` the
references outside PyTorch (ONNX Runtime's own ``run()``, NVML's power samples, a worker forked from the
forkserver), ``checks`` the checks;
``benches/gpu_selfcheck.py`` is the command.
"""
