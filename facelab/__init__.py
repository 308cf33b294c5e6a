"""facelab: a local, private lab that turns a video of your face into a model of your expressions."""

__version__ = "0.1.0"
