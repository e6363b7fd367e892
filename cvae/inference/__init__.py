"""Generated Open Inference Protocol stubs (run `make proto`; never edit by hand)."""
