"""Feedback intake: responses to recommendations, satisfaction surveys and complaints."""
