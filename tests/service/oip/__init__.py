"""Tests of service/oip/: the Open Inference Protocol."""
