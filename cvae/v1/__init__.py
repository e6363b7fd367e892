"""Generated protocol stubs for cvae.v1 (run `make proto`; never edit by hand)."""
