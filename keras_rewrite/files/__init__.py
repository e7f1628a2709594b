"""Model files: loading them safely (`model_files`) and writing them atomically (`atomic_save`)."""
