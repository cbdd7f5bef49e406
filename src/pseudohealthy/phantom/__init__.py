"""A synthetic FCD BIDS dataset in the layout and with the quirks of OpenNeuro ds004199."""
