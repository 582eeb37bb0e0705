"""edgekd build side: config, stages, runner and CLI (needs torch + ultralytics for training)."""
