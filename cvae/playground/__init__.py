"""`cvae playground`: a small web page to try the service (draw or upload a digit, see it in
every label and its label probabilities, sample fresh digits)."""
