"""The hub: settings, web app, accounts, challenges, submissions, leaderboards, API, CLI."""
