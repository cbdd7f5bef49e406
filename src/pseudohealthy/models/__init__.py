"""A trained model: its networks (MONAI), their checkpoint format, where a work folder keeps them and how
they load (``trained``), and its model card."""
