"""The golden model: the integer reference, its trainable float twins, the
quantizer, the model file, the tasks and the experiments."""
