"""Language models: the project's own byte-level GPT (gpt.py), a small pre-LayerNorm decoder-only
transformer with tied embeddings and a KV cache, whose FFN (``MLP``: ``up`` / ``act`` / ``down``,
plus ``gate`` for SwiGLU) names its submodules so that the gating code can find the activation it
replaces. Other language-model modules (adapters, training, evaluation) live beside it."""
