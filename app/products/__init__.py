"""The product catalog that holdings reference and recommendations offer."""
