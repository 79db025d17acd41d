@echo off
rem uninstall.cmd - removes the tlsgate-collector service: the Configuration Manager
rem application's uninstall program, also usable by hand from an elevated prompt.
rem   uninstall.cmd          stop and delete the service, its Event Log source, its firewall
rem                          rule and %ProgramFiles%\tlsgate; keep %ProgramData%\tlsgate
rem                          (config, certificate and key, logs) for a reinstall
rem   uninstall.cmd /purge   also delete %ProgramData%\tlsgate, the host's key included
rem Exit codes: 0 removed (also when nothing was installed), 1 a file could not be removed,
rem 2/3/4 tlsgate-collector's own. Appends to %ProgramData%\tlsgate\logs\install.log.
setlocal EnableExtensions
if not defined ProgramData (
    echo uninstall.cmd: error: the ProgramData variable is not set
    exit /b 1
)
set "DATA=%ProgramData%\tlsgate"
set "PURGE="
if /i "%~1"=="/purge" set "PURGE=1"
if not "%~1"=="" if not defined PURGE (
    echo uninstall.cmd: error: unknown argument "%~1" ^(only /purge^)
    exit /b 2
)
if not exist "%DATA%\logs\" mkdir "%DATA%\logs"
call :main >> "%DATA%\logs\install.log" 2>&1
set "RC=%ERRORLEVEL%"
if "%RC%"=="0" if defined PURGE (
    rmdir /s /q "%DATA%"
    if exist "%DATA%\" (
        echo uninstall.cmd: error: cannot delete %DATA%
        exit /b 1
    )
    echo uninstall.cmd: exit 0, %DATA% deleted
    exit /b 0
)
echo uninstall.cmd: exit %RC% (details in %DATA%\logs\install.log)
exit /b %RC%

:main
echo ==== uninstall.cmd %DATE% %TIME%
set "PF=%ProgramFiles%"
if defined ProgramW6432 set "PF=%ProgramW6432%"
set "DEST=%PF%\tlsgate"
set "EXE=%DEST%\tlsgate-collector.exe"
if not exist "%EXE%" goto noexe
"%EXE%" service uninstall
set "RC=%ERRORLEVEL%"
if not "%RC%"=="0" (
    echo error: service uninstall failed with exit %RC%
    exit /b %RC%
)
goto files

:noexe
rem The exe is gone but the service may remain: remove what it would have.
echo %EXE% is missing; removing any leftover service with sc, reg and netsh
sc stop tlsgate-collector >nul 2>&1
sc delete tlsgate-collector >nul 2>&1
set "EVKEY=HKLM\SYSTEM\CurrentControlSet\Services\EventLog\Application\tlsgate-collector"
reg delete "%EVKEY%" /f >nul 2>&1
netsh advfirewall firewall delete rule name=tlsgate-collector >nul 2>&1

:files
rem The service's process may take a moment to exit after it reports STOPPED.
set /a TRIES=0
:again
if exist "%DEST%\" rmdir /s /q "%DEST%"
if not exist "%DEST%\" goto removed
set /a TRIES+=1
if %TRIES% geq 15 (
    echo error: cannot remove %DEST%
    exit /b 1
)
ping -n 2 127.0.0.1 >nul
goto again
:removed
echo removed %DEST%
exit /b 0
