"""The Mobitex gateway: the MO form, and (later) the MT client and the fake gateway."""
