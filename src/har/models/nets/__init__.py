"""The networks, in PyTorch. Each family's registry entries and builders are in
``har.models.<family>`` (no PyTorch needed to read them); the classes here are
imported when a network is built."""
