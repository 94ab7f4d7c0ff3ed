"""`webhouse chaos`: the whole stack run twice on the same simulated traffic, once undisturbed
and once while its processes are killed and its broker paused or killed at seeded moments;
then every table of the two runs is compared, with each other and with the ground truth.

- ``plan``     the seeded fault schedule (pure)
- ``stack``    the stack of one run: its own broker, the demo's services, a supervisor
- ``compare``  table snapshots, their differences, lost and duplicated events
- ``run``      both runs and the report (JSON)
- ``cli``      the command
"""
