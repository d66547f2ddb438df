"""The pilot's figures: what the regions' consultations add up to, for the pilot leads."""
