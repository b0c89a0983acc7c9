//! CONSOLE_IO: dom0's console is the machine's (its bytes go out as they
//! are, and it reads serial input); other domains' output is printed by
//! line as `(dN) ...`, rate-limited (`domain::console`).

use super::{Ctx, HcResult, Ret};
use crate::xen::abi::{consoleio, Errno};

/// The most one write copies (Linux writes at most a page at a time).
const MAX_WRITE: usize = 16 * 1024;

pub fn call(cx: &mut Ctx, cmd: u64, count: u64, buf: u64) -> HcResult {
    match cmd {
        consoleio::WRITE => {
            let mut bytes = alloc::vec![0u8; (count as usize).min(MAX_WRITE)];
            cx.mem().read(buf, &mut bytes)?;
            if cx.dom.privileged {
                crate::platform::guest_console(&bytes);
            } else {
                cx.dom.console_write(&bytes);
            }
            Ok(Ret::Val(0))
        }
        // Serial input switched to dom0 (three Ctrl-A toggle).
        consoleio::READ if cx.dom.privileged => {
            let mem = cx.mem();
            let mut res = Ok(());
            let n = crate::platform::take_console_input(count as usize, &mut |b| {
                res = mem.write(buf, b);
                res.is_ok()
            });
            res?;
            Ok(Ret::Val(n as u64))
        }
        consoleio::READ => Ok(Ret::Val(0)),
        _ => Err(Errno::EINVAL),
    }
}
