"""Instance and migration states, as Nova names them.

``vm_state`` is where an instance rests, ``task_state`` the operation under
way (None when idle), ``power_state`` what the hypervisor last reported.
Migration statuses follow Nova's lifecycle of a resize or cold migration.
"""

# vm_state ------------------------------------------------------------------
BUILDING = 'building'
ACTIVE = 'active'
STOPPED = 'stopped'
RESIZED = 'resized'
ERROR = 'error'

VM_STATES = (BUILDING, ACTIVE, STOPPED, RESIZED, ERROR)

# task_state ----------------------------------------------------------------
SPAWNING = 'spawning'
RESIZE_PREP = 'resize_prep'
RESIZE_MIGRATING = 'resize_migrating'
RESIZE_MIGRATED = 'resize_migrated'
RESIZE_FINISH = 'resize_finish'
RESIZE_CONFIRMING = 'resize_confirming'
RESIZE_REVERTING = 'resize_reverting'
DELETING = 'deleting'

TASK_STATES = (SPAWNING, RESIZE_PREP, RESIZE_MIGRATING, RESIZE_MIGRATED, RESIZE_FINISH,
               RESIZE_CONFIRMING, RESIZE_REVERTING, DELETING)

# power_state (Nova's numbers) ----------------------------------------------
NOSTATE = 0
RUNNING = 1
PAUSED = 3
SHUTDOWN = 4
CRASHED = 6
SUSPENDED = 7

POWER_STATE_NAMES = {
    NOSTATE: 'NOSTATE', RUNNING: 'Running', PAUSED: 'Paused',
    SHUTDOWN: 'Shutdown', CRASHED: 'Crashed', SUSPENDED: 'Suspended',
}

# migration.status ----------------------------------------------------------
MIGRATION_PRE_MIGRATING = 'pre-migrating'
MIGRATION_MIGRATING = 'migrating'
MIGRATION_POST_MIGRATING = 'post-migrating'
MIGRATION_FINISHED = 'finished'
MIGRATION_CONFIRMING = 'confirming'
MIGRATION_CONFIRMED = 'confirmed'
MIGRATION_REVERTING = 'reverting'
MIGRATION_REVERTED = 'reverted'
MIGRATION_ERROR = 'error'

MIGRATION_STATUSES = (
    MIGRATION_PRE_MIGRATING, MIGRATION_MIGRATING, MIGRATION_POST_MIGRATING,
    MIGRATION_FINISHED, MIGRATION_CONFIRMING, MIGRATION_CONFIRMED,
    MIGRATION_REVERTING, MIGRATION_REVERTED, MIGRATION_ERROR,
)
# A migration in one of these holds nothing and moves nothing any more.
MIGRATION_TERMINAL = (MIGRATION_CONFIRMED, MIGRATION_REVERTED,
                      MIGRATION_ERROR)

# Allowed status changes. A flow that is rolled back walks these backwards,
# so each forward edge has its reverse where an undo exists.
MIGRATION_TRANSITIONS = {
    MIGRATION_PRE_MIGRATING: {MIGRATION_MIGRATING, MIGRATION_ERROR},
    MIGRATION_MIGRATING: {MIGRATION_POST_MIGRATING, MIGRATION_PRE_MIGRATING,
                          MIGRATION_ERROR},
    MIGRATION_POST_MIGRATING: {MIGRATION_FINISHED, MIGRATION_MIGRATING,
                               MIGRATION_ERROR},
    MIGRATION_FINISHED: {MIGRATION_CONFIRMING, MIGRATION_REVERTING,
                         MIGRATION_POST_MIGRATING, MIGRATION_ERROR},
    MIGRATION_CONFIRMING: {MIGRATION_CONFIRMED, MIGRATION_FINISHED},
    MIGRATION_CONFIRMED: {MIGRATION_CONFIRMING},
    MIGRATION_REVERTING: {MIGRATION_REVERTED, MIGRATION_FINISHED},
    MIGRATION_REVERTED: {MIGRATION_REVERTING},
    MIGRATION_ERROR: set(),
}

MIGRATION_TYPE_RESIZE = 'resize'
MIGRATION_TYPE_MIGRATION = 'migration'

# Which resting states allow which operation (Nova's check_instance_state).
ALLOWED_VM_STATES = {
    'resize': (ACTIVE, STOPPED),
    'migrate': (ACTIVE, STOPPED),
    'confirm_resize': (RESIZED,),
    'revert_resize': (RESIZED,),
}


def vm_state_for_power(power_state):
    """The resting vm_state that matches a guest's power state."""
    return ACTIVE if power_state == RUNNING else STOPPED


def can_transition(old, new):
    return new in MIGRATION_TRANSITIONS.get(old, ())
