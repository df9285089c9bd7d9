"""Doors for programs written against other libraries' APIs (``hashindex.compat.faiss``)."""
