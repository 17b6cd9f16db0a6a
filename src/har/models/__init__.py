"""Models: the registry (``registry``; each family module, ``resnet3d``,
``hara_variants``, ``densenet3d``, ``torchvision_video``, ``i3d``, registers its entries
next to its builders), the lookup and loading (``zoo``), the PyTorch networks
(``nets``), provenance (``info``) and checkpoint readers (``checkpoints``)."""
