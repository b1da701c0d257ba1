"""Molecular data sets copied into probe (aqueous solubility, FreeSolv); see README.md for sources and licences."""
