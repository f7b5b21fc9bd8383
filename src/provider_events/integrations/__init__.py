"""Integrations with the tools agents run in: the Claude Code hook, the provider switch for
Claude Code's settings.json, and the provider definitions both use.

May import: ``publish``, ``events``, ``errors``, ``settings``.
"""
