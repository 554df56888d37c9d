"""Test-data builders shared by the tests, the fuzz seeds and the committed golden C
header; not part of the installed package."""
