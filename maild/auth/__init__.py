"""Signing in to mail servers without passwords: OAuth2 (XOAUTH2, OAUTHBEARER).

`config.py` holds what the settings check (light); `oauth2.py` the token provider and the
IMAP/SMTP sign-in.
"""
