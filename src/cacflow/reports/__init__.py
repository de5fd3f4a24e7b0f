"""Reports: quality-control pictures of scored series."""
