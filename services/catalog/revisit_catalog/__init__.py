"""The catalog service: discovers new Sentinel passes over AOIs in STAC catalogs."""
