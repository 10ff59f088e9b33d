"""Validation case ``catana_62mev`` (:mod:`.case`): measured Bragg peak, 62 MeV, CATANA (INFN-LNS Catania)."""
