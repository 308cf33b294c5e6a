"""facelab: a local, private lab that turns a video of your face into a model of your expressions."""

import os

# OpenMP threads that spin while waiting made training 10-20x slower whenever two facelab
# processes shared the 2 cores (a training job and the app encoding, say); waiting passively
# cost about 3% on an idle machine (benchmarks/train_speed.py). Set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
