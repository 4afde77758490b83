"""smsflows: two-way SMS keyword campaigns on the Mobitex gateway."""

__version__ = "0.1.0"
