"""Input pipelines (tf.data) for similarity learning: MNIST, pairs, P x K sampling, faces, LFW, MTFL."""
