"""Vendored CRD schemas (Argo Rollout, KServe InferenceService); `vendor.py` regenerates them."""
