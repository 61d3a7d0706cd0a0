"""Instance and migration states, as Nova names them, and the groups of
TaskFlow's states that resize-flows reads in its flow log.

``vm_state`` is where an instance rests, ``task_state`` the operation under
way (None when idle), ``power_state`` what the hypervisor last reported.
Migration statuses follow Nova's lifecycle of a resize or cold migration.
"""
from taskflow import states as tf_states

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
# A plugin's device attached or detached (Nova's task states of the same
# names): the instance is held by one of these meanwhile, so that no move
# starts in between (persistence/instance_tasks.py).
ATTACHING_VOLUME = 'attaching_volume'
DETACHING_VOLUME = 'detaching_volume'
ATTACHING_INTERFACE = 'attaching_interface'
DETACHING_INTERFACE = 'detaching_interface'
DEVICE_TASK_STATES = (ATTACHING_VOLUME, DETACHING_VOLUME, ATTACHING_INTERFACE,
                      DETACHING_INTERFACE)

TASK_STATES = (SPAWNING, RESIZE_PREP, RESIZE_MIGRATING, RESIZE_MIGRATED,
               RESIZE_FINISH, RESIZE_CONFIRMING, RESIZE_REVERTING,
               DELETING) + DEVICE_TASK_STATES

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
#: An aborted move, undone (``server migration abort``).
MIGRATION_CANCELLED = 'cancelled'

MIGRATION_STATUSES = (
    MIGRATION_PRE_MIGRATING, MIGRATION_MIGRATING, MIGRATION_POST_MIGRATING,
    MIGRATION_FINISHED, MIGRATION_CONFIRMING, MIGRATION_CONFIRMED,
    MIGRATION_REVERTING, MIGRATION_REVERTED, MIGRATION_ERROR,
    MIGRATION_CANCELLED,
)
# A migration in one of these holds nothing and moves nothing any more.
MIGRATION_TERMINAL = (MIGRATION_CONFIRMED, MIGRATION_REVERTED,
                      MIGRATION_ERROR, MIGRATION_CANCELLED)
#: A move's migration in these can be aborted (its flow is under way).
MIGRATION_ABORTABLE = (MIGRATION_PRE_MIGRATING, MIGRATION_MIGRATING,
                       MIGRATION_POST_MIGRATING)

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
    MIGRATION_CANCELLED: set(),
}
# An aborted move's undo ends it cancelled from where it was.
for _status in MIGRATION_ABORTABLE:
    MIGRATION_TRANSITIONS[_status].add(MIGRATION_CANCELLED)

MIGRATION_TYPE_RESIZE = 'resize'
MIGRATION_TYPE_MIGRATION = 'migration'

# Which resting states allow which operation (Nova's check_instance_state).
#: A resize or cold migration starts from these.
MOVE_FROM = (ACTIVE, STOPPED)
#: A confirm or revert starts from these.
RESOLVE_FROM = (RESIZED,)
ALLOWED_VM_STATES = {
    'resize': MOVE_FROM,
    'migrate': MOVE_FROM,
    'confirm_resize': RESOLVE_FROM,
    'revert_resize': RESOLVE_FROM,
}

# flow log (TaskFlow's states) ----------------------------------------------
#: TaskFlow's flow states a flow can be stored in.
FLOW_STATES = (tf_states.PENDING, tf_states.RUNNING, tf_states.SUCCESS,
               tf_states.FAILURE, tf_states.REVERTING, tf_states.REVERTED,
               tf_states.SUSPENDING, tf_states.SUSPENDED, tf_states.RESUMING)
#: A flow that ended: finished, or rolled back.
FLOW_ENDED = (tf_states.SUCCESS, tf_states.REVERTED)
#: Not ended and not failed: running when leased, else interrupted.
FLOW_UNDER_WAY = tuple(s for s in FLOW_STATES
                       if s not in FLOW_ENDED + (tf_states.FAILURE,))
#: The stored states of a flow whose engine never ran it: None until its
#: engine first saves it, PENDING after.
FLOW_NEVER_RUN = (None, tf_states.PENDING)
#: The task transitions that a task's watchers report (an instance action
#: event each, a line of the CLI's progress).
TASK_TRANSITIONS = (tf_states.RUNNING, tf_states.SUCCESS, tf_states.FAILURE,
                    tf_states.REVERTING, tf_states.REVERTED,
                    tf_states.REVERT_FAILURE)


def vm_state_for_power(power_state):
    """The resting vm_state that matches a guest's power state."""
    return ACTIVE if power_state == RUNNING else STOPPED


def can_transition(old, new):
    return new in MIGRATION_TRANSITIONS.get(old, ())
