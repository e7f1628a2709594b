import pathlib
import sys

# tests/ holds helpers.py; make it importable from this subfolder too.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
