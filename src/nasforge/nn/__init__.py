"""Building blocks shared by the networks: NASNet cell ops, factorized reduction, drop path."""
