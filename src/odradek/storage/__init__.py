"""Where Odradek's bytes rest: the file-system seam (``disk.py``), checksummed small
documents (``documents.py``) and a disk that can lose power (``powerloss.py``)."""
