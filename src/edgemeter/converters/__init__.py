"""Model format converters: the light paths runtimes need (ONNX → .tflite) without TensorFlow."""
