"""The matter catalogue (事项目录): its file format, rules and versioned store; the application form a
matter's guide declares and how a submission is checked against it; the working-day calendar file.

May import persistence, config, observability and domain; not the other feature packages.
"""
