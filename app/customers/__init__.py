"""Customers: profiles, holdings, activity events and the metrics derived from them."""
