"""absl-flag binaries; installed as `sqznet_tf.tools` and as console scripts `sqznet-*`."""
