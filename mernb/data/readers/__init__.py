"""One reader per dataset release."""
