//! `sched_op` (`sched.h`): the reasons a domain gives when it shuts down,
//! which the toolstack reads back from `getdomaininfo`'s flags.

/// `SHUTDOWN_*`: `sched_shutdown.reason`, and the code in
/// [`crate::domctl::dominf`]'s shutdown bits.
pub mod shutdown {
    consts! {
        /// Exited normally: clean up and kill.
        POWEROFF: u32 = 0 => "SHUTDOWN_poweroff";
        /// Clean up, kill, and restart.
        REBOOT: u32 = 1 => "SHUTDOWN_reboot";
        /// Clean up, save the suspend state, kill.
        SUSPEND: u32 = 2 => "SHUTDOWN_suspend";
        /// The guest crashed.
        CRASH: u32 = 3 => "SHUTDOWN_crash";
        /// Restart: the watchdog expired.
        WATCHDOG: u32 = 4 => "SHUTDOWN_watchdog";
        /// Reset without destroying the domain.
        SOFT_RESET: u32 = 5 => "SHUTDOWN_soft_reset";
        /// The highest valid reason.
        MAX: u32 = 5 => "SHUTDOWN_MAX";
    }
}
