"""The domain core: plain types, times and ids, and the one error hierarchy.

It imports nothing else of ours, so every other layer (and ``rules``) may use it."""
