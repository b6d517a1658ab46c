"""CIB XML: hardened parsing, normalisation, id adoption, the v2 patchset diff, human rendering."""
