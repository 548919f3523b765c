"""DistilBERT sentiment inference server."""
