"""Per-cover inputs shared by several model families: the 25 hand-crafted features, the
ensemble's descriptors and pretrained-network embeddings."""
