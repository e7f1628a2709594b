"""`python -m keras_rewrite_cli ...`: the command line without importing keras_rewrite first."""
from .entry import run

if __name__ == "__main__":
    run()
