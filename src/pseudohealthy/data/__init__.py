"""Data in: BIDS reading, preprocessing to the template grid, slices and splits."""
