"""Stage 1, frontend: a user's model and inputs → an ATen-level GraphModule.

``models`` is the one adapter module that knows model families (Hugging Face, timm): loading a
source, building example inputs, preparing a copy for capture. ``capture`` runs torch.export.
"""
