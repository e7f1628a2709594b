"""`python -m keras_rewrite_cli ...`: the command line without importing keras_rewrite first."""
from keras_rewrite.cli.entry import run

if __name__ == "__main__":
    run()
