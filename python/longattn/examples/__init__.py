"""Runnable examples: `python -m longattn.examples.hf_prefill --help`."""
